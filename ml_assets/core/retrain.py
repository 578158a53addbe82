"""The retrain-on-degradation episode: which retrain to ask for next, or when to stop asking and alert once.

An episode starts with a new failure of a watched check (a significant live AUC drop, feature drift) and ends
with a passing live evaluation and no new failure. Within it each strategy of ``STRATEGIES`` is tried once, in
order: repeating the daily retrain with the same window, parameters and seed would give the same bytes. When all
were tried and failures still come, the episode raises one alert and asks for nothing more.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

STRATEGIES = ("recent_window", "tuned")


@dataclass(frozen=True)
class Episode:
    after: int = 0  # newest check-evaluation id already seen
    tried: tuple[str, ...] = ()
    alerted: bool = False

    def as_dict(self) -> dict:
        return {**asdict(self), "tried": list(self.tried)}

    @classmethod
    def from_dict(cls, data: dict) -> Episode:
        return cls(int(data["after"]), tuple(data["tried"]), bool(data["alerted"]))


@dataclass(frozen=True)
class Step:
    episode: Episode
    strategy: str | None = None  # ask for this retrain
    alert: bool = False  # every strategy was tried: alert once
    skip_reason: str = ""


def next_step(episode: Episode, failure_ids: list[int], recovered: bool, day_available: bool) -> Step:
    """``failure_ids``: new failed evaluations (ids after ``episode.after``); ``recovered``: a new passing live
    evaluation; ``day_available``: a labelled day exists to retrain on."""
    newest = max([*failure_ids, episode.after])
    if not failure_ids:
        if recovered:
            return Step(Episode(newest), skip_reason="live AUC back within its range: episode over")
        return Step(episode, skip_reason="no new failure")
    untried = [s for s in STRATEGIES if s not in episode.tried]
    if not day_available or not untried:
        alert = not episode.alerted
        return Step(Episode(newest, episode.tried, True), alert=alert,
                    skip_reason="every retrain strategy was tried: alerted once")
    return Step(Episode(newest, (*episode.tried, untried[0])), strategy=untried[0])
