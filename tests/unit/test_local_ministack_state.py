"""The local stack's saved ministack state (local/services.py): restored only under the port it was made under."""

from __future__ import annotations

from pathlib import Path

import pytest

from local import services
from local.config import LocalConfig


def _state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, saved_port: str) -> Path:
    state = tmp_path / "ministack-state"
    state.mkdir()
    (state / "sqs.json").write_text("{}")
    (state / "gateway-port").write_text(saved_port)
    monkeypatch.setattr(services, "MINISTACK_STATE", state)
    monkeypatch.setattr(services, "STATE_PORT", state / "gateway-port")
    monkeypatch.setattr(services, "running_pid", lambda name: None)
    return state


def test_a_state_saved_under_another_port_is_set_aside_named_by_that_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a state ministack saved while it served port 4580
    state = _state(monkeypatch, tmp_path, "4580")
    monkeypatch.setenv("FANOUT_AWS_PORT", "4566")

    # When the stack comes up on 4566
    services.set_aside_state_of_another_port(LocalConfig.from_env())

    # Then ministack starts without it, and it is kept, named by its port
    assert not state.exists()
    assert (tmp_path / "ministack-state.port-4580" / "sqs.json").exists()


def test_a_state_saved_under_the_same_port_is_restored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    state = _state(monkeypatch, tmp_path, "4566")
    monkeypatch.setenv("FANOUT_AWS_PORT", "4566")

    services.set_aside_state_of_another_port(LocalConfig.from_env())

    assert (state / "sqs.json").exists()


def test_a_state_whose_queues_carry_another_port_is_set_aside_whatever_port_is_recorded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a state saved before the port was recorded (or restored under another port and saved again): its
    # queues' addresses carry 4580, the recorded port says 4566
    state = _state(monkeypatch, tmp_path, "4566")
    (state / "sqs.json").write_text('{"queues": {"q": {"url": "http://localhost:4580/000000000000/q"}}}')
    monkeypatch.setenv("FANOUT_AWS_PORT", "4566")

    services.set_aside_state_of_another_port(LocalConfig.from_env())

    assert not state.exists()
    assert (tmp_path / "ministack-state.port-4580" / "sqs.json").exists()


def test_a_state_with_no_recorded_port_whose_queues_carry_this_one_is_restored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = _state(monkeypatch, tmp_path, "4566")
    (state / "gateway-port").unlink()
    (state / "sqs.json").write_text('{"queues": {"q": {"url": "http://localhost:4566/000000000000/q"}}}')
    monkeypatch.setenv("FANOUT_AWS_PORT", "4566")

    services.set_aside_state_of_another_port(LocalConfig.from_env())

    assert (state / "sqs.json").exists()
