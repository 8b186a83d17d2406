"""The runnable examples run to completion (in their quick mode) and report what they claim."""

import re

from support.scripts import run_script


def test_maxsim_rerank_example():
    out = run_script("examples/maxsim_rerank.py", "--quick")
    # Both reranking sections put the relevant document first for every query.
    firsts = re.findall(r"relevant document ranked first for (\d+)/(\d+) queries", out.stdout)
    assert len(firsts) == 2 and all(a == b for a, b in firsts), out.stdout
    # mlvec agrees with the einsum formulation it is timed against.
    diff = float(re.search(r"max \|difference\| (\S+)", out.stdout).group(1))
    assert diff < 1e-3
    # The training loss goes down.
    losses = [float(x) for x in re.findall(r"loss (\d+\.\d+)", out.stdout)]
    assert len(losses) >= 2 and losses[-1] < losses[0], out.stdout
