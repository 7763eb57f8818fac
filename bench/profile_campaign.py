"""Where the campaign engine's time goes, in process: ``--contacts`` contacts imported
into a temporary ``bulk.db``, one campaign (bench/campaign's template: 3 KB HTML, 5
variables, 10 links, tracking on) sent by :class:`CampaignRunner` through the real
ingest (DKIM RSA-2048 signing) into a real :class:`FileSpool` (fsync per message), as
the campaign worker does, under cProfile (``--no-profile``: timing only).

Prints the wall and CPU time per message and the top functions by cumulative and own
time.  Run: ``python3 bench/profile_campaign.py [--contacts 10000] [--top 40]``.
``--render-step``: only what a render process does, in this process (the call's and
the answer's pickles, ``compose_chunk`` with RSA-2048 signing, chunks of ten), with
the CPU time of this thread (``--no-sign``: without the signing).  Profiles count
the CPU time of the main thread (the spool's commit threads are not in them; the
totals printed are of the process).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.machinery
import importlib.util
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from mailyard.bulk.campaigns import renderpool  # noqa: E402
from mailyard.bulk.campaigns.compose import send_settings  # noqa: E402
from mailyard.bulk.campaigns.model import CampaignSpec, CampaignState  # noqa: E402
from mailyard.bulk.campaigns.recipients import RecipientStore  # noqa: E402
from mailyard.bulk.campaigns.renderpool import RenderSigning  # noqa: E402
from mailyard.bulk.campaigns.runner import CampaignRunner, Queue  # noqa: E402
from mailyard.bulk.importer import ImportFormat  # noqa: E402
from mailyard.bulk.sqlite import SqliteContactStore  # noqa: E402
from mailyard.config import config_from_dict  # noqa: E402
from mailyard.dkim.keys import KeyAlgorithm, KeyStore  # noqa: E402
from mailyard.ingest.pipeline import ingest_for  # noqa: E402
from mailyard.queue.spool import FileSpool  # noqa: E402
from mailyard.services import setup  # noqa: E402


def bench_module() -> object:
    """bench/campaign (a script without .py) as a module: its template and domains."""
    path = str(Path(__file__).resolve().parent / "campaign")
    loader = importlib.machinery.SourceFileLoader("campaign_bench", path)
    spec = importlib.util.spec_from_loader("campaign_bench", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def render_step(campaign: object, settings: object, config: object, links: list[str],
                contacts: int, sign: bool = True) -> None:
    """What a render process does for ``contacts`` recipients."""
    import pickle

    from mailyard.bulk.campaigns.runner import CHUNK

    renderpool.start(RenderSigning.of(config.dkim, config.data_dir)  # type: ignore[attr-defined]
                     if sign else None)
    jobs = [renderpool.ComposeJob(i + 1, f"r{i}@readers.bench.test", f"Reader {i}",
                                  {"plan": "pro" if i % 3 else "free", "city": f"City {i % 50}",
                                   "since": f"20{10 + i % 15}", "points": str(i % 997)},
                                  "news", None) for i in range(contacts)]
    for i in range(0, contacts, CHUNK):
        call = pickle.dumps((renderpool.compose_chunk, (campaign, settings, links,
                                                        jobs[i:i + CHUNK], time.time())),
                            pickle.HIGHEST_PROTOCOL)
        function, args = pickle.loads(call)
        answer = pickle.dumps((True, function(*args)), pickle.HIGHEST_PROTOCOL)
        pickle.loads(answer)


async def send_all(runner: CampaignRunner) -> None:
    while await runner.tick() or runner.campaigns.campaigns(state=CampaignState.SENDING):
        pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--contacts", type=int, default=10_000)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--render-workers", type=int, default=0)
    p.add_argument("--render-step", action="store_true")
    p.add_argument("--no-sign", action="store_true", help="--render-step without DKIM")
    args = p.parse_args()
    bench = bench_module()
    with tempfile.TemporaryDirectory(prefix="profile-campaign-") as tmp:
        config = config_from_dict({"data_dir": tmp, "hostname": "mx.bench.test",
                                   "local_domains": [bench.FROM_DOMAIN],  # type: ignore[attr-defined]
                                   "http": {"public_url": "https://news.bench.test"}})
        KeyStore(tmp).create(bench.FROM_DOMAIN, "bench", KeyAlgorithm.RSA)  # type: ignore[attr-defined]
        contacts = setup.open_contacts(config)
        contacts.create_list("news")
        rows = io.StringIO("address,name,plan,city,since,points\n" + "".join(
            f"r{i}@{bench.DOMAIN},Reader {i},{'pro' if i % 3 else 'free'},"  # type: ignore[attr-defined]
            f"City {i % 50},20{10 + i % 15},{i % 997}\n" for i in range(args.contacts)))
        contacts.import_contacts(io.BytesIO(rows.getvalue().encode()), ImportFormat.CSV, "news")
        store = contacts.store
        assert isinstance(store, SqliteContactStore)
        campaigns = setup.open_campaign_store(contacts)
        spec = CampaignSpec(from_address=f"news@{bench.FROM_DOMAIN}",  # type: ignore[attr-defined]
                            from_name="Bench News", subject="News for {{ name }}",
                            html=bench.template(), lists=["news"])  # type: ignore[attr-defined]
        campaign = campaigns.add_campaign("bench", spec, time.time())
        campaigns.move(campaign.id, CampaignState.DRAFT, CampaignState.SCHEDULED, time.time(),
                       send_at=time.time())
        if args.render_step:
            settings = send_settings(config)
            links = list(bench.LINKS)  # type: ignore[attr-defined]
            profile = cProfile.Profile(time.thread_time)
            wall, cpu = time.perf_counter(), time.thread_time()
            render_step(campaign, settings, config, links, min(CHUNK_WARM, args.contacts),
                        not args.no_sign)
            wall, cpu = time.perf_counter(), time.thread_time()
            if not args.no_profile:
                profile.enable()
            render_step(campaign, settings, config, links, args.contacts, not args.no_sign)
            profile.disable()
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            return report(args, wall, cpu, "", profile)
        spool = FileSpool(Path(tmp) / "queue", config.hostname, gather_commits=True)
        runner = CampaignRunner(campaigns, RecipientStore(store.db), store.digest,
                                ingest_for(config, spool),
                                Queue(spool.submitted, spool.sweep, lambda qid: None),
                                send_settings(config), "bench-1", lambda owner: False,
                                render_workers=args.render_workers,
                                render_signing=RenderSigning.of(config.dkim, config.data_dir))
        profile = cProfile.Profile(time.thread_time)
        wall, cpu = time.perf_counter(), time.process_time()
        if not args.no_profile:
            profile.enable()
        asyncio.run(send_all(runner))
        if runner.pool is not None:
            runner.pool.close()
        profile.disable()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        counts = RecipientStore(store.db).counts(campaign.id)
        spool.close()
    return report(args, wall, cpu, str(counts), profile)


CHUNK_WARM = 20  # messages rendered before the clock starts (the skeleton, the key)


def report(args: argparse.Namespace, wall: float, cpu: float, counts: str,
           profile: cProfile.Profile) -> int:
    n = args.contacts
    print(f"{n} messages: wall {wall:.2f} s ({1000 * wall / n:.3f} ms/msg, {n / wall:.0f} "
          f"msg/s), cpu {cpu:.2f} s ({1000 * cpu / n:.3f} ms/msg); {counts}")
    if not args.no_profile:
        stats = pstats.Stats(profile)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
