"""The library's layout: one package per chapter, and no import cycle between the core and a chapter."""
import subprocess
import sys


def test_the_strategy_registry_imports_no_chapter():
    """lib.strategies is the core every chapter builds on: importing it must not import lib.peft (which imports
    it), so the two do not form a cycle; a chapter's strategies appear once the chapter is imported."""
    code = ("import sys, lib.strategies as s; assert 'lib.peft' not in sys.modules, 'lib.strategies imported lib.peft'; "
            "assert 'fedrpca' not in s.STRATEGIES; import lib.peft; "
            "assert {'fedrpca', 'task_arithmetic', 'ravan'} <= set(s.STRATEGIES)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_routing_is_one_package():
    from lib import routing
    from lib.routing import llm, pool, router
    assert routing.KMeansRouter is router.KMeansRouter and llm.Pool is pool.Pool
