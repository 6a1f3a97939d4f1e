"""The committed helper module must match the taxonomy it is generated from."""

from __future__ import annotations

import inspect
from pathlib import Path

import touchpoint
from touchpoint import Client, _codegen
from touchpoint.touchpoints import TouchpointCalls
from touchpoint_schemas.taxonomy import STANDARD_TOUCHPOINTS


def test_committed_module_is_what_the_generator_writes() -> None:
    committed = Path(_codegen.TARGET).read_text()
    assert committed == _codegen.render(), "run: .venv/bin/python -m touchpoint._codegen"


def test_one_helper_per_standard_touchpoint_on_the_client_and_the_module() -> None:
    for tp in STANDARD_TOUCHPOINTS:
        method = getattr(TouchpointCalls, tp.name)
        assert callable(method)
        assert callable(getattr(touchpoint, tp.name))
        assert tp.name in touchpoint.__all__
        parameters = inspect.signature(method).parameters
        assert ("score" in parameters) == tp.carries_score
        if tp.carries_score:
            assert parameters["score"].kind is inspect.Parameter.KEYWORD_ONLY
        assert f"stage ``{tp.stage.value}``" in (method.__doc__ or "")


def test_helper_names_do_not_shadow_the_client_api() -> None:
    client_api = {name for name in vars(Client) if not name.startswith("_")}
    core = {"track", "identify", "alias", "group", "page", "screen"}
    names = {tp.name for tp in STANDARD_TOUCHPOINTS}
    assert not names & (client_api | core)
