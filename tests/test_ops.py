"""The op record itself: its cheap copies match dataclasses.replace."""

from dataclasses import replace

import pytest

from workloads import Decode, load_model


def test_an_ops_quick_copy_is_replace_and_refuses_a_field_it_lacks():
    ops = Decode(model=load_model("llama-3-8b"), batch=4, context=512).lower().ops
    for op in ops:
        assert op.but(host_s=1e-6, count=3) == replace(op, host_s=1e-6, count=3)
        assert op.but() == op and op.but() is not op
    with pytest.raises(TypeError, match="no field"):
        ops[0].but(flop=1.0)
