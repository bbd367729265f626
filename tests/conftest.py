"""Order of the parallel run. pytest-xdist hands out whole test files (``--dist loadfile`` in
pyproject.toml), so a module fixture such as the trained repository of ``test_workflow.py`` is built
once; files with slow end-to-end tests are handed out first, so the many short files fill in around
them instead of a long file starting last."""


def pytest_collection_modifyitems(config, items):
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: collection order otherwise
