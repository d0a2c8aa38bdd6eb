"""trio's ``TaskStatus`` under one name for the interpreter and for mypy.

trio-typing 0.10 (a dependency of libp2p) installs ``trio-stubs``, stubs of trio 0.21 that mypy prefers over trio's
own inline annotations (PEP 561 stub packages win); they lack ``trio.TaskStatus`` and name the type
``trio_typing.TaskStatus``. Annotate services with this alias; delete it once libp2p drops trio-typing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trio_typing import TaskStatus
else:
    from trio import TaskStatus

__all__ = ["TaskStatus"]
