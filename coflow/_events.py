"""What ``notify`` receives: one small value per event, in the order it happened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from ._runner import Runner


@dataclass(frozen=True, slots=True)
class FlowState:
    """The state was replaced by one not equal to the previous."""

    state: Any
    runner: Runner


@dataclass(frozen=True, slots=True)
class FlowDone:
    """The flow completed normally with this final state."""

    state: Any
    runner: Runner


@dataclass(frozen=True, slots=True)
class FlowError:
    """The flow failed; ``reason`` is the exception."""

    reason: BaseException
    runner: Runner


@dataclass(frozen=True, slots=True)
class FlowRestarted:
    """A supervisor restarted the flow after ``reason``; its initial ``FlowState`` follows."""

    reason: BaseException | None
    runner: Runner


FlowEvent = Union[FlowState, FlowDone, FlowError, FlowRestarted]
