"""Profile the supervisor's event loop with cProfile (bench/profile_relay --cprofile).

Put this directory first on ``PYTHONPATH`` and set ``MAILYARD_CPROFILE`` to an output
path: a ``mailyard serve`` process then runs ``Supervisor.main_loop`` under cProfile
(the event loop's thread only: the dispatcher, the SMTP client, the recorder's loop
side) and writes the statistics there when it stops (SIGTERM).  Other processes (the
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
        profile = cProfile.Profile()

        async def main_loop(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            profile.enable()
            try:
                return await original(self, *args, **kwargs)
            finally:
                profile.disable()
                profile.dump_stats(_OUT)

        supervisor.Supervisor.main_loop = main_loop  # type: ignore[method-assign]

    _install()
