"""The traceback shown for a failed user function holds the user's frames only."""
import asyncio
from concurrent.futures import ThreadPoolExecutor

from durafunc.functions.invoke import _user_traceback


def user_function():
    raise ValueError("bad input")


def test_only_the_users_frames_are_shown():
    async def run():
        with ThreadPoolExecutor(1) as pool:        # as the invoker runs sync functions
            try:
                await asyncio.get_running_loop().run_in_executor(pool, user_function)
            except ValueError as e:
                return _user_traceback(e)
    text = asyncio.run(run())
    assert text.startswith("Traceback (most recent call last):")
    assert "in user_function" in text and text.rstrip().endswith("ValueError: bad input")
    files = [line.split('"')[1] for line in text.splitlines() if line.startswith('  File "')]
    assert files and set(files) == {__file__}          # no thread pool, event loop, durafunc or SDK frames
