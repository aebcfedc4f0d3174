"""The glibc arena cap: in force on Linux/glibc after the first call, idempotent, and a quiet no-op elsewhere."""

import platform
import sys

from stemgui import allocator


def test_share_malloc_arena_is_idempotent_and_on_where_glibc_is(monkeypatch):
    first = allocator.share_malloc_arena()
    assert allocator.share_malloc_arena() is first
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert first is True


def test_no_mallopt_is_a_no_op(monkeypatch):
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator._set_arena_max(1) is False
