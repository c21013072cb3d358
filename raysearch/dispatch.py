"""The hand-over between a search's Tune trials and its pools: one actor per search.

A Tune trial submits its job and waits for what its pool says of it (results, then the end).
Every rank of a pool asks the dispatcher the same questions (which job next? stop after this
epoch?) and gets the same answer, so the ranks agree without a collective of their own: a pool
that idles between trials holds no collective open that could time out. Rank 0 alone reports.

Ray Train restarts a pool's worker group when a worker dies; the new group's ranks arrive in a
new placement group, which is how the dispatcher tells a restart from the next job: the job the
lost group was running is handed to the new one (it goes on from its latest checkpoint) and its
restart is counted.
"""

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import ray

from raysearch.job import TIME_LIMITED, End, Event, Job, Verdict

SETTLE_S = 10.0  # how long the ranks of a failing trial wait for each other before giving up
REPORT_WAIT_S = 1800.0  # how long ranks wait for rank 0's report of an epoch (its checkpoint)


@dataclass
class _Trial:
    job: Job
    events: list[Event] = field(default_factory=list)
    ended: bool = False
    cancelled: bool = False
    posted: dict[int, bool] = field(default_factory=dict)  # epoch -> the scheduler stops it
    # What the worker group now running it has said and heard; a restarted group counts up
    # `generation` and starts these afresh.
    generation: int = 0
    start: tuple[str | None] | None = None  # the checkpoint rank 0 goes on from, once it chose
    reported: set[int] = field(default_factory=set)  # the epochs rank 0 reported
    answers: dict[int, Verdict] = field(default_factory=dict)  # epoch -> what the ranks heard
    raised: dict[int, str] = field(default_factory=dict)  # rank -> its traceback, first first


@dataclass
class _Pool:
    incarnation: str | None = None  # the placement group of its current worker group
    gone: set[str] = field(default_factory=set)  # the placement groups of its lost ones
    waiting: bool = False  # its rank 0 waits for a job: it is up and has none
    jobs: list[Job] = field(default_factory=list)  # every job it was given, in order (seq)
    reserved: Job | None = None  # the job a pool being started will run first
    controller: Any = None  # its Train controller, to abort it
    last_error: str = ""  # what its lost workers last raised


@ray.remote(num_cpus=0)
class Dispatcher:
    def __init__(self, max_failures: int, decision_wait_s: float = 60.0,
                 max_trial_s: float | None = None) -> None:
        """Create with `max_concurrency` above every rank's one waiting call (search.py).
        `max_trial_s`: scheduler.max_trial_s, checked against rank 0's `trial_s`."""
        self.max_failures = max_failures
        self.decision_wait_s = decision_wait_s  # past this a rung's epoch goes on undecided
        self.max_trial_s = max_trial_s
        self.queue: deque[Job] = deque()
        self.trials: dict[str, _Trial] = {}
        self.pools: dict[str, _Pool] = {}
        self.closed = False
        self.changed = asyncio.Condition()

    # --- the Tune trial's side ---------------------------------------------------------------

    async def submit(self, job: Job) -> None:
        async with self.changed:
            trial = self.trials[job.trial_id] = _Trial(job)
            if self.closed:
                self._end(trial, End.CANCELLED)
            else:
                self.queue.append(job)
            self.changed.notify_all()

    async def events(self, trial_id: str, timeout_s: float = 30.0) -> list[Event]:
        """What the trial's pool said since the last call; waits for something to say."""
        trial = self.trials[trial_id]
        async with self.changed:
            await self._wait(lambda: trial.events, timeout_s)
            said, trial.events = trial.events, []
            return said

    # --- the driver's side: the scheduler's decisions, trials that end, the search's end ----

    async def post(self, trial_id: str, epoch: int, stop: bool) -> None:
        async with self.changed:
            if trial_id in self.trials:
                self.trials[trial_id].posted[epoch] = stop
                self.changed.notify_all()

    async def cancel(self, trial_id: str) -> None:
        """Tune ended the trial: its pool stops it after the epoch it is in."""
        async with self.changed:
            if trial_id in self.trials:
                self._cancel(self.trials[trial_id])
                self.changed.notify_all()

    async def close(self) -> None:
        """The search ends: every job stops after its epoch, every pool's ranks return."""
        async with self.changed:
            self.closed = True
            for trial in self.trials.values():
                self._cancel(trial)
            self.changed.notify_all()

    async def claim(self, pool: str) -> str | None:
        """For a pool about to be started: wait for a job that no pool which is up and idle can
        take, and keep it for this one; its trial id, or None once the search has ended."""
        async with self.changed:
            await self._wait(lambda: self.closed or self.queue and not any(
                p.waiting for p in self.pools.values()), None)
            if self.closed:
                return None
            job = self.pools.setdefault(pool, _Pool()).reserved = self.queue.popleft()
            return job.trial_id

    async def pool_failed(self, pool: str, end: End, why: str) -> None:
        """The pool's Train run ended in an error (its workers never started, or it gave up):
        the job it ran, or the one kept for it, ends with `why`."""
        async with self.changed:
            p = self.pools.setdefault(pool, _Pool())
            job = self._current(p, -1) or p.reserved
            if job is not None:
                self._end(self.trials[job.trial_id], end, why)
            if p.incarnation is not None:
                p.gone.add(p.incarnation)
            p.reserved, p.incarnation, p.controller, p.waiting = None, None, None, False
            self.changed.notify_all()

    async def controllers(self) -> list[Any]:
        return [p.controller for p in self.pools.values() if p.controller is not None]

    # --- a pool's side -----------------------------------------------------------------------

    async def started(self, pool: str, controller: Any) -> None:
        """A pool's Train controller is up (from inside it, so the driver can abort it)."""
        async with self.changed:
            self.pools.setdefault(pool, _Pool()).controller = controller

    async def worker_error(self, pool: str, why: str) -> None:
        async with self.changed:
            self.pools.setdefault(pool, _Pool()).last_error = why

    async def take(self, pool: str, rank: int, incarnation: str, after: int) -> Job | None:
        """The job every rank of the pool runs after job `after` (-1: a fresh process); rank 0
        takes it from the queue, the others wait for it. None: the search has ended, or the
        asking rank's worker group is one the pool lost (a call its dead rank left waiting)."""
        async with self.changed:
            p = self.pools.setdefault(pool, _Pool())
            self._arrive(p, incarnation)
            try:
                while p.incarnation == incarnation:
                    job = self._current(p, after)
                    if job is not None or self.closed:
                        return job
                    if rank == 0 and (p.reserved or self.queue):
                        job, p.reserved = p.reserved or self.queue.popleft(), None
                        job.seq = len(p.jobs)
                        p.jobs.append(job)
                        self.changed.notify_all()
                        return job
                    if rank == 0 and not p.waiting:
                        p.waiting = True
                        self.changed.notify_all()  # a pool being started need not take a job
                    await self.changed.wait()
                return None
            finally:
                if rank == 0 and p.incarnation == incarnation:
                    p.waiting = False

    async def start_from(self, trial_id: str, rank: int, checkpoint: str | None = None
                         ) -> str | None:
        """The checkpoint every rank of the trial's group goes on from (None: from the start):
        the one rank 0 found, so all ranks replay and resume alike whatever their view of the
        storage (an NFS cache may lag)."""
        trial = self.trials[trial_id]
        async with self.changed:
            generation = trial.generation
            if rank == 0 and trial.start is None:
                trial.start = (checkpoint,)
                self.changed.notify_all()
            await self._wait(lambda: trial.start is not None
                             or trial.generation != generation, REPORT_WAIT_S)
            return trial.start[0] if trial.start and trial.generation == generation else None

    async def report(self, trial_id: str, result: dict[str, Any]) -> None:
        async with self.changed:
            trial = self.trials[trial_id]
            trial.reported.add(result["epoch"])
            result = {**result, "restarts": trial.job.restarts}
            if self.max_trial_s is not None and result.get("trial_s", 0.0) > self.max_trial_s:
                # past its time: every rank stops after this epoch, as at a scheduler's stop,
                # and Tune hears why (tracking.MLflowTrials counts it as stopped early)
                trial.posted[result["epoch"]] = True
                result[TIME_LIMITED] = True
            trial.events.append(Event(result=result))
            self.changed.notify_all()

    async def decide(self, trial_id: str, epoch: int, rung: bool) -> Verdict:
        """What the trial does after `epoch`, once rank 0 has reported it: at a rung, the
        scheduler's word (waited for, within decision_wait_s); at any epoch, a trial Tune ended
        stops and one that another rank failed fails. Every rank that asks about the same epoch
        hears the same."""
        trial = self.trials[trial_id]
        async with self.changed:
            generation = trial.generation

            def settled() -> bool:
                return (epoch in trial.answers or bool(trial.raised)
                        or trial.generation != generation)

            # rank 0 writes the epoch's checkpoint first, which may take long (a big model, a
            # bucket); then the scheduler's word, which takes a round trip through Tune
            await self._wait(lambda: settled() or epoch in trial.reported, REPORT_WAIT_S)
            if rung:
                await self._wait(lambda: settled() or epoch in trial.posted or trial.cancelled,
                                 self.decision_wait_s)
            if trial.generation != generation:  # asked by a worker group that was lost
                return Verdict.STOP
            if trial.raised:
                return Verdict.FAIL
            if epoch not in trial.answers:
                stop = trial.cancelled or trial.posted.get(epoch, False)
                trial.answers[epoch] = Verdict.STOP if stop else Verdict.GO
            return trial.answers[epoch]

    async def end(self, trial_id: str, end: End, why: str = "") -> None:
        async with self.changed:
            self._end(self.trials[trial_id], end, why)
            self.changed.notify_all()

    async def raised(self, trial_id: str, rank: int, world: int, why: str) -> bool:
        """Rank `rank` failed the trial with `why`. True once every rank has (the others hear
        FAIL at their next decide, so they stand at the same point and the pool goes on with
        its next job); False if some rank did not within SETTLE_S (it waits in a collective:
        the worker group must be restarted)."""
        trial = self.trials[trial_id]
        async with self.changed:
            generation = trial.generation
            trial.raised.setdefault(rank, why)
            self.changed.notify_all()
            await self._wait(lambda: len(trial.raised) == world
                             or trial.generation != generation, SETTLE_S)
            if trial.generation != generation or len(trial.raised) < world:
                return False
            self._end(trial, End.FAILED, next(iter(trial.raised.values())))
            self.changed.notify_all()
            return True

    # --- state -------------------------------------------------------------------------------

    def _arrive(self, p: _Pool, incarnation: str) -> None:
        """A rank of worker group `incarnation` asks; a new group of a pool that had one before
        means its workers were lost, and the job they ran goes on in the new group."""
        if p.incarnation == incarnation or incarnation in p.gone:
            return
        job = self._current(p, -1) if p.incarnation is not None else None
        if p.incarnation is not None:
            p.gone.add(p.incarnation)
        p.waiting = False
        if job is not None:
            job.restarts += 1
            trial = self.trials[job.trial_id]
            trial.generation += 1
            trial.start, trial.reported, trial.answers, trial.raised = None, set(), {}, {}
            if job.restarts > self.max_failures:
                self._end(self.trials[job.trial_id], End.FAILED,
                          f"WorkersLost: the trial's workers were lost {job.restarts} times "
                          f"(resources.max_failures is {self.max_failures}): {p.last_error}")
        p.incarnation = incarnation

    def _current(self, p: _Pool, after: int) -> Job | None:
        """The pool's first job after `after` that has not ended."""
        return next((j for j in p.jobs[after + 1:] if not self.trials[j.trial_id].ended), None)

    def _cancel(self, trial: _Trial) -> None:
        trial.cancelled = True
        if trial.job in self.queue:
            self.queue.remove(trial.job)
            self._end(trial, End.CANCELLED)
        for p in self.pools.values():
            if p.reserved is trial.job:
                p.reserved = None
                self._end(trial, End.CANCELLED)

    def _end(self, trial: _Trial, end: End, why: str = "") -> None:
        if not trial.ended:
            trial.ended = True
            trial.events.append(Event(end=end, why=why))

    async def _wait(self, ready, timeout_s: float | None) -> None:
        try:
            await asyncio.wait_for(self.changed.wait_for(ready), timeout_s)
        except asyncio.TimeoutError:
            pass
