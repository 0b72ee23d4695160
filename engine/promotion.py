"""PromotionController: whether a candidate model replaces a baseline, and what that changes.

The reference system's API and criteria, decided by a real sequential test. Its own rule (50
games, win rate >= 0.52, +25 Elo) promotes an equal model about a third of the time: 50 games
pin a win rate down to about +-96 Elo. Here those criteria stay as outer gates, and the
`confidence_threshold` is a paired SPRT (engine.sprt) whose parameters were chosen with
`python -m tools.promotion_sim` so that, with the gates on:

    P(promote | equal) <= 5%, P(promote | 25 Elo weaker) <= 0.5%,
    P(promote | 35 Elo stronger) >= 85%, P(promote | 50 Elo stronger) >= 95%,
    mean games <= 600 at equal and at +35.

SPRT: elo0 = 2, elo1 = 35, alpha = 1 - confidence_threshold = 0.05, beta = 0.05, nothing
decided before 100 games, truncated at 1200 games where only a one-sided 95% lower bound above
1/2 passes. elo1 = 35 is the smallest gain worth a swap (the outer gate asks +25 measured).
elo0 = 0 met every goal but left P(promote | equal) at 0.045 +- 0.003 (4,000 trials), too close
to 5%: the variance-estimating GSPRT is only approximately at level alpha. elo0 = 2 gives about
0.035 at equal and 0.87 at +35, with about 530-560 games (README, promotion section).

The controller is plain data in, plain data out: a caller (node/) hands it the evidence it
gathered from the match store (an `Evidence` per candidate and baseline), and
`execute_promotion` returns the alias moves and the event to record, which the caller writes
with its leader term as the fencing token. The decision is a field of its own; whether the
challenger queue was reordered is a separate boolean (the reference overwrote one with the
other).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from engine.sprt import PairedSprt, SprtParams, Verdict


class PromotionType(Enum):
    STAGING = "staging"  # worth evaluating against production: passes the baseline gates
    PRODUCTION = "production"  # replaces production: SPRT plus every outer gate
    TIER = "tier"  # earns a difficulty tier against the tier's baseline
    CHAMPION = "champion"  # best so far: the production test against the champion
    ROLLBACK = "rollback"  # production goes back to the previous model


class Decision(Enum):
    SWAP_PRODUCTION = "swap_production"
    RETAIN_PRODUCTION = "retain_production"
    INSUFFICIENT_DATA = "insufficient_data"
    ROLLBACK = "rollback"


RANDOM, HEURISTIC = "random", "heuristic"  # the baseline players' participant ids


@dataclass(frozen=True, slots=True)
class PromotionCriteria:
    """The reference system's criteria and defaults, plus the SPRT that replaces its
    confidence threshold (see the module doc for why these SPRT parameters)."""

    min_elo_improvement: float = 25.0
    min_games_played: int = 50
    min_win_rate: float = 0.52
    max_value_mse_degradation: float = 0.05
    confidence_threshold: float = 0.95
    tier_games_required: int = 100
    random_gate: float = 0.85  # score against the random player
    heuristic_gate: float = 0.60  # score against the heuristic player
    sprt_elo0: float = 2.0
    sprt_elo1: float = 35.0
    sprt_beta: float = 0.05
    sprt_min_games: int = 100
    sprt_max_games: int = 1200

    def __post_init__(self) -> None:
        if not 0.5 < self.confidence_threshold < 1.0:
            raise ValueError(f"confidence_threshold {self.confidence_threshold} must be in "
                             "(0.5, 1)")
        for name in ("min_win_rate", "random_gate", "heuristic_gate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} {value} must be a score in [0, 1]")
        for name in ("min_games_played", "tier_games_required"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)} must be >= 1")
        self.sprt()  # its own checks name any bad SPRT value

    def sprt(self) -> SprtParams:
        return SprtParams(self.sprt_elo0, self.sprt_elo1, 1.0 - self.confidence_threshold,
                          self.sprt_beta, self.sprt_min_games, self.sprt_max_games)


@dataclass(frozen=True, slots=True)
class HeadToHead:
    """The candidate's paired play against one opponent, as the SPRT has counted it."""

    games: int
    score: float | None  # the candidate's mean score per game
    elo: float | None  # the Elo difference that score implies
    verdict: Verdict
    summary: str = ""


def head_to_head(sprt: PairedSprt) -> HeadToHead:
    return HeadToHead(sprt.games, sprt.mean, sprt.elo, sprt.verdict, sprt.summary())


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the caller knows about a candidate, from match rows and training metadata."""

    versus_baseline: HeadToHead | None = None
    gates: Mapping[str, tuple[float, int]] = field(default_factory=dict)  # id: (score, games)
    value_mse: float | None = None  # candidate's value loss on held-out positions
    baseline_value_mse: float | None = None
    reorder_applied: bool = False  # the caller moved this challenger up its queue


@dataclass(frozen=True, slots=True)
class PromotionDecision:
    model_id: str
    board_type: str
    num_players: int
    promotion_type: PromotionType
    baseline_model_id: str | None
    should_promote: bool
    decision: Decision
    reasons: tuple[str, ...]
    games_played: int = 0
    win_rate: float | None = None
    elo_improvement: float | None = None
    reorder_applied: bool = False

    @property
    def final(self) -> bool:
        """Whether more games could change it (insufficient data) or not."""
        return self.decision is not Decision.INSUFFICIENT_DATA


@dataclass(frozen=True, slots=True)
class AliasMove:
    name: str  # production, previous, staging, candidate
    board_type: str
    num_players: int
    model_id: str


@dataclass(frozen=True, slots=True)
class PromotionExecution:
    """What executing a decision changes: the caller writes these, fenced by its term."""

    decision: PromotionDecision
    alias_moves: tuple[AliasMove, ...]
    dry_run: bool


EvidenceSource = Callable[[str, str | None, str, int], Evidence]


class PromotionController:
    """Decides promotions from evidence; remembers the aliases it knows of per config."""

    def __init__(self, evidence: EvidenceSource, criteria: PromotionCriteria | None = None
                 ) -> None:
        self.criteria = criteria or PromotionCriteria()
        self._evidence = evidence
        self._aliases: dict[tuple[str, int, str], str] = {}

    def observe_alias(self, name: str, board_type: str, num_players: int, model_id: str) -> None:
        """Tell the controller where an alias points (from the registry the caller reads)."""
        self._aliases[(board_type, num_players, name)] = model_id

    def alias(self, name: str, board_type: str, num_players: int) -> str | None:
        return self._aliases.get((board_type, num_players, name))

    # --- deciding -----------------------------------------------------------------------

    def evaluate_promotion(
        self, model_id: str, board_type: str, num_players: int,
        promotion_type: PromotionType = PromotionType.PRODUCTION,
        baseline_model_id: str | None = None,
    ) -> PromotionDecision:
        """Whether `model_id` should be promoted (`promotion_type`) over the baseline (by
        default the config's production model; the previous one for a rollback)."""
        if baseline_model_id is None:
            alias = "previous" if promotion_type is PromotionType.ROLLBACK else "production"
            baseline_model_id = self._aliases.get((board_type, num_players, alias))
        if promotion_type is PromotionType.ROLLBACK:
            return self._rollback(model_id, board_type, num_players, baseline_model_id)
        ev = self._evidence(model_id, baseline_model_id, board_type, num_players)
        c = self.criteria
        reasons: list[str] = []
        pending = False  # some criterion could still pass with more games
        failed = False

        def gate(ok: bool, more_games_help: bool, text: str) -> None:
            nonlocal pending, failed
            if ok:
                reasons.append(f"pass: {text}")
            elif more_games_help:
                pending = True
                reasons.append(f"pending: {text}")
            else:
                failed = True
                reasons.append(f"fail: {text}")

        needs_gates = promotion_type in (PromotionType.STAGING, PromotionType.PRODUCTION,
                                         PromotionType.CHAMPION)
        if needs_gates:
            for baseline, threshold in ((RANDOM, c.random_gate), (HEURISTIC, c.heuristic_gate)):
                score, games = ev.gates.get(baseline, (0.0, 0))
                enough = games >= c.min_games_played
                gate(enough and score >= threshold, not enough,
                     f"score {score:.3f} vs {baseline} over {games} games "
                     f"(needs >= {threshold:.2f} over >= {c.min_games_played})")

        h2h = ev.versus_baseline
        games = h2h.games if h2h else 0
        win_rate = h2h.score if h2h else None
        elo = h2h.elo if h2h else None
        if promotion_type in (PromotionType.PRODUCTION, PromotionType.CHAMPION):
            if baseline_model_id is None:
                # No incumbent: the first model of a config only has to beat the baselines.
                reasons.append("pass: no incumbent for this config")
            elif h2h is None:
                gate(False, True, f"no games against {baseline_model_id}")
            else:
                verdict = h2h.verdict
                gate(verdict.passed, verdict is Verdict.RUNNING, h2h.summary or verdict.value)
                if verdict is not Verdict.RUNNING:
                    gate(games >= c.min_games_played, False,
                         f"{games} games played (needs >= {c.min_games_played})")
                    gate(win_rate is not None and win_rate >= c.min_win_rate, False,
                         f"win rate {_fmt(win_rate)} (needs >= {c.min_win_rate:.2f})")
                    gate(elo is not None and elo >= c.min_elo_improvement, False,
                         f"Elo {_fmt(elo, '+.1f')} (needs >= +{c.min_elo_improvement:g})")
            if ev.value_mse is not None and ev.baseline_value_mse is not None:
                degradation = ev.value_mse - ev.baseline_value_mse
                gate(degradation <= c.max_value_mse_degradation, False,
                     f"value MSE {ev.value_mse:.4f} vs {ev.baseline_value_mse:.4f} "
                     f"(degradation <= {c.max_value_mse_degradation:g})")
        elif promotion_type is PromotionType.TIER:
            enough = games >= c.tier_games_required
            gate(enough and win_rate is not None and win_rate >= c.min_win_rate, not enough,
                 f"win rate {_fmt(win_rate)} vs {baseline_model_id} over {games} games "
                 f"(needs >= {c.min_win_rate:.2f} over >= {c.tier_games_required})")

        if failed:
            decision = Decision.RETAIN_PRODUCTION
        elif pending:
            decision = Decision.INSUFFICIENT_DATA
        else:
            decision = Decision.SWAP_PRODUCTION
        return PromotionDecision(
            model_id, board_type, num_players, promotion_type, baseline_model_id,
            decision is Decision.SWAP_PRODUCTION, decision, tuple(reasons), games, win_rate, elo,
            ev.reorder_applied)

    def _rollback(self, model_id: str, board_type: str, num_players: int,
                  previous: str | None) -> PromotionDecision:
        if previous is None or previous == model_id:
            return PromotionDecision(
                model_id, board_type, num_players, PromotionType.ROLLBACK, previous, False,
                Decision.RETAIN_PRODUCTION, ("fail: no previous model to roll back to",))
        return PromotionDecision(
            model_id, board_type, num_players, PromotionType.ROLLBACK, previous, True,
            Decision.ROLLBACK, (f"pass: previous model {previous} is registered",))

    # --- executing ----------------------------------------------------------------------

    def execute_promotion(self, decision: PromotionDecision, dry_run: bool = False
                          ) -> PromotionExecution:
        """The alias moves a decision makes; the controller's view follows unless `dry_run`.

        The caller records the decision as a promotion event and applies the moves, all with
        its leader term; a refused (stale-term) write means another leader decides now.
        """
        board, n = decision.board_type, decision.num_players
        moves: list[AliasMove] = []
        if decision.should_promote:
            kind = decision.promotion_type
            if kind in (PromotionType.PRODUCTION, PromotionType.CHAMPION):
                incumbent = self._aliases.get((board, n, "production"))
                if incumbent is not None and incumbent != decision.model_id:
                    moves.append(AliasMove("previous", board, n, incumbent))
                moves.append(AliasMove("production", board, n, decision.model_id))
            elif kind is PromotionType.STAGING:
                moves.append(AliasMove("staging", board, n, decision.model_id))
            elif kind is PromotionType.ROLLBACK and decision.baseline_model_id is not None:
                moves.append(AliasMove("production", board, n, decision.baseline_model_id))
            # A tier is recorded by its event alone: tiers have no alias of their own.
        if not dry_run:
            for move in moves:
                self._aliases[(move.board_type, move.num_players, move.name)] = move.model_id
        return PromotionExecution(decision, tuple(moves), dry_run)


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)
