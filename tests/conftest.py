"""Shared fixtures. Importing zoo first quiets TensorFlow's start-up logs for the whole session."""
import os

import pytest

from cnnzoo.env import setup_tensorflow

setup_tensorflow()  # quiet TensorFlow before any test imports it
import zoo  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    return zoo.datasets.load("digits")


@pytest.fixture
def free_port():
    """A currently free TCP port on 127.0.0.1."""
    from cnnzoo.net import free_port as get

    return get


@pytest.fixture(scope="session")
def subprocess_env():
    """Environment for subprocesses: quiet TF, no GPU probing surprises, unbuffered output."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# The longest files (benchmarks/results/test_suite.md), longest first.
LONGEST_FIRST = ("test_readme.py", "test_benchmarks_study.py", "test_search_resume.py", "test_demo.py",
                 "test_compare.py", "test_search.py", "test_slim.py", "test_oracles.py")


def pytest_collection_modifyitems(session, config, items):
    """The longest files first, then the other files with slow tests: with two workers taking
    whole files in order, the long files start at once and the short ones fill in around them,
    instead of one long file running alone at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item) -> tuple[int, int]:
        if item.path.name in LONGEST_FIRST:
            return (0, LONGEST_FIRST.index(item.path.name))
        return (1, 0) if item.path in slow_files else (2, 0)

    items.sort(key=rank)  # stable: the order within a file is kept
