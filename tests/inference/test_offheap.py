"""Arrays outside the malloc heap behave as ordinary numpy arrays."""

from __future__ import annotations

import mmap
import pickle

import numpy as np

from geoseg.inference.offheap import offheap_copy, offheap_empty


def test_offheap_arrays_are_mapped_writable_and_picklable():
    a = offheap_empty((3, 5, 7), np.float16)
    owner = a
    while isinstance(owner, np.ndarray):
        owner = owner.base
    assert isinstance(owner.obj if isinstance(owner, memoryview) else owner, mmap.mmap)
    a[...] = np.arange(105, dtype=np.float16).reshape(3, 5, 7)
    b = pickle.loads(pickle.dumps(a))
    assert b.dtype == np.float16 and np.array_equal(a, b)
    mask = np.random.default_rng(0).random((4, 4)) > 0.5
    c = offheap_copy(mask)
    assert c.flags.writeable and c.dtype == bool and np.array_equal(c, mask)
    assert offheap_empty((0, 3), np.uint8).shape == (0, 3)
