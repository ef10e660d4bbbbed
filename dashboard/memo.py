"""A bounded, thread-safe memory of one process: the least recently used entries go first."""

from __future__ import annotations

import threading
from collections import OrderedDict


class Recent[K, V]:
    """At most ``size`` entries, kept by the process for the threads of all its requests."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._guard = threading.Lock()

    def get[D](self, key: K, default: D) -> V | D:
        with self._guard:
            if key not in self._entries:
                return default
            self._entries.move_to_end(key)
            return self._entries[key]

    def put(self, key: K, value: V) -> None:
        with self._guard:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()

    def __contains__(self, key: object) -> bool:
        with self._guard:
            return key in self._entries
