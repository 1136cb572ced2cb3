"""Guarded evaluator that also reports where its candidate forkserver came from."""

import os

import agentopt_guest
from agentopt_guest import CandidateProcess, call_candidate


def evaluate(program_path):
    values = [call_candidate(program_path, "run", timeout=10.0)["pid"] for _ in range(5)]
    with CandidateProcess(program_path) as proc:
        same = {proc.call("run")["pid"] for _ in range(3)}
    server = agentopt_guest._SERVER
    return {"score": 1.0, "handed": float(server is not None and server.proc is None),
            "distinct_children": float(len(set(values))), "one_child": float(len(same) == 1),
            "child_uid": float(call_candidate(program_path, "run")["uid"]), "my_pid": float(os.getpid())}
