"""django-q2 entry points: ids in, no logic."""

from executions import runner


def run_execution(execution_id: int) -> None:
    runner.run_execution(execution_id)
