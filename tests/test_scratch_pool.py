"""ScratchPool: reuse of freed buffers, its limits and its bookkeeping."""

import torch

from iou_aware.layers.scratch_pool import ScratchPool


def test_a_given_back_buffer_is_reused_for_a_request_it_fits():
    pool = ScratchPool(max_free_bytes=1 << 20)
    first = pool.take(1000, torch.float32)
    assert first.shape == (1000,) and first.dtype == torch.float32
    address = first.data_ptr()
    pool.give(first.view(10, 100))  # a view goes back as its whole buffer
    assert pool.free_bytes == 4000
    again = pool.take(600, torch.float32)  # 1000 <= 2 x 600: reused
    assert again.data_ptr() == address and again.shape == (600,)
    assert pool.free_bytes == 0


def test_no_reuse_across_dtypes_or_for_much_smaller_requests():
    pool = ScratchPool(max_free_bytes=1 << 20)
    buffer = pool.take(1000, torch.float32)
    address = buffer.data_ptr()
    pool.give(buffer)
    assert pool.take(1000, torch.float64).data_ptr() != address
    assert pool.take(400, torch.float32).data_ptr() != address  # would waste more than half
    assert pool.take(1001, torch.float32).data_ptr() != address  # too small
    assert pool.free_bytes == 4000


def test_the_smallest_fitting_buffer_is_taken():
    pool = ScratchPool(max_free_bytes=1 << 20)
    large, small = pool.take(1800, torch.float32), pool.take(1000, torch.float32)
    small_address = small.data_ptr()
    pool.give(large)
    pool.give(small)
    assert pool.take(950, torch.float32).data_ptr() == small_address


def test_at_most_max_free_bytes_are_kept_and_a_buffer_once():
    pool = ScratchPool(max_free_bytes=6000)
    a, b = pool.take(1000, torch.float32), pool.take(1000, torch.float32)
    pool.give(a)
    pool.give(a)  # twice: kept once
    assert pool.free_bytes == 4000
    pool.give(b)  # 8000 > 6000: freed, not kept
    assert pool.free_bytes == 4000
    pool.clear()
    assert pool.free_bytes == 0
