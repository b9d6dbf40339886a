"""The console's start-up line stays short however many clients there are."""

from mfed.loggers.console import clients_line
from mfed.types import ClientSpec


def specs(n_per_task, tasks=("semseg", "depth")):
    return [ClientSpec(f"{t}-{i}", t, (), (), seed=0) for t in tasks for i in range(n_per_task)]


def test_a_few_clients_are_listed_and_many_are_summarised():
    assert clients_line(specs(2)) == "starting 4 clients: semseg-0, semseg-1, depth-0, depth-1"
    line = clients_line(specs(5001))
    assert line == (
        "starting 10002 clients (semseg 5001, depth 5001): semseg-0, semseg-1, semseg-2, semseg-3, semseg-4, "
        "semseg-5, ..., depth-4995, depth-4996, depth-4997, depth-4998, depth-4999, depth-5000"
    )
