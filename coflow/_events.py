"""What ``notify`` receives: one small value per event, in the order it happened."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._values import value

if TYPE_CHECKING:
    from ._runner import Runner


@value
class FlowState:
    """The state was replaced by one not equal to the previous."""

    state: Any
    runner: Runner


@value
class FlowDone:
    """The flow completed normally with this final state."""

    state: Any
    runner: Runner


@value
class FlowError:
    """The flow failed; ``reason`` is the exception."""

    reason: BaseException
    runner: Runner


@value
class FlowRestarted:
    """A supervisor restarted the flow after ``reason``; its initial ``FlowState`` follows."""

    reason: BaseException | None
    runner: Runner


FlowEvent = FlowState | FlowDone | FlowError | FlowRestarted
