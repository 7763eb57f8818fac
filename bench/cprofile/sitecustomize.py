"""Profile the supervisor's event loop with cProfile (bench/profile_relay --cprofile).

Put this directory first on ``PYTHONPATH`` and set ``MAILYARD_CPROFILE`` to an output
path: a ``mailyard serve`` process then runs ``Supervisor.main_loop`` under cProfile
(the event loop's thread only: the dispatcher, the SMTP client, the recorder's loop
side) and writes the statistics there when it stops (SIGTERM).  With
``MAILYARD_CPROFILE_CPU`` set the times are the thread's CPU time
(``time.thread_time``) instead of wall time, so a function waiting for the other
threads or the other processes on a busy machine is not charged for it.  Other processes (the
SMTP workers, the CLI) are left alone.  Nothing in ``src/`` knows about it.
"""

import os
import sys

_OUT = os.environ.get("MAILYARD_CPROFILE", "")

if _OUT and "serve" in sys.argv:
    import cProfile

    def _install() -> None:
        import mailyard.daemon.supervisor as supervisor

        original = supervisor.Supervisor.main_loop
        import time

        profile = (cProfile.Profile(time.thread_time) if os.environ.get("MAILYARD_CPROFILE_CPU")
                   else cProfile.Profile())

        async def main_loop(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            profile.enable()
            try:
                return await original(self, *args, **kwargs)
            finally:
                profile.disable()
                profile.dump_stats(_OUT)

        supervisor.Supervisor.main_loop = main_loop  # type: ignore[method-assign]

    _install()
