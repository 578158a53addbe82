"""The retrain episode: each strategy once, then one alert, and a recovery starts a new episode."""
from ml_assets.core.retrain import STRATEGIES, Episode, next_step


def test_each_strategy_once_then_one_alert_then_silence():
    episode, asked, alerts = Episode(), [], 0
    for failure in range(1, 6):
        step = next_step(episode, [failure], recovered=False, day_available=True)
        asked.append(step.strategy)
        alerts += step.alert
        episode = step.episode
    assert asked == [*STRATEGIES, None, None, None] and alerts == 1
    assert episode.after == 5 and episode.alerted


def test_a_recovery_ends_the_episode_and_nothing_new_keeps_it():
    tried = Episode(after=3, tried=STRATEGIES, alerted=True)
    assert next_step(tried, [], recovered=False, day_available=True).episode == tried
    over = next_step(tried, [], recovered=True, day_available=True)
    assert over.episode == Episode(after=3) and over.strategy is None
    assert next_step(over.episode, [4], recovered=False, day_available=True).strategy == STRATEGIES[0]


def test_no_labelled_day_alerts_instead_of_asking():
    step = next_step(Episode(), [1], recovered=False, day_available=False)
    assert step.strategy is None and step.alert
    assert Episode.from_dict(step.episode.as_dict()) == step.episode
