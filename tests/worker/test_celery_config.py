"""The Celery app's configuration and the beat schedule."""
from __future__ import annotations

from beat_schedule import BEAT_SCHEDULE
from shared.settings import Settings
from worker.app import create_celery


def make_app(**overrides):
    app = create_celery(Settings(_env_file=None, redis_url="redis://broker.internal:6379/4", **overrides))
    app.loader.import_default_modules()
    return app


def test_configuration_comes_from_settings_and_is_explicit():
    app = make_app(job_hard_time_limit_seconds=900, job_soft_time_limit_seconds=800,
                   job_retry_backoff_max_seconds=120)
    conf = app.conf
    assert conf.broker_url == "redis://broker.internal:6379/4"
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.task_soft_time_limit == 800 and conf.task_time_limit == 900
    assert conf.broker_transport_options["visibility_timeout"] > 900 + 120
    assert conf.worker_send_task_events and conf.worker_cancel_long_running_tasks_on_connection_loss
    assert {q.name for q in conf.task_queues} == {"generation", "billing", "webhooks", "default"}


def test_tasks_are_routed_to_their_domain_queue():
    app = make_app()
    router = app.amqp.router
    assert router.route({}, "generation.run")["queue"].name == "generation"
    assert router.route({}, "maintenance.reap_stuck_jobs")["queue"].name == "default"


def test_every_beat_entry_names_a_registered_task_and_expires():
    app = make_app()
    assert BEAT_SCHEDULE
    for name, entry in BEAT_SCHEDULE.items():
        assert entry["task"] == name and name in app.tasks, name
        assert 0 < entry["options"]["expires"], name


def test_housekeeping_tasks_stay_out_of_flower_and_the_routine_logs():
    import logging

    from shared.jobs.kinds import QUIET_TASKS, TaskName
    from worker.signals import _quiet_housekeeping

    app = make_app()
    assert all(not app.tasks[name].send_events for name in QUIET_TASKS)
    assert app.tasks[TaskName.GENERATION_RUN].send_events, "real work stays visible"

    def record(logger, level, msg, args=(), data=None):
        made = logging.LogRecord(logger, level, __file__, 1, msg, args, None)
        if data is not None:
            made.data = data
        return made

    sweep = {"name": str(TaskName.MAINTENANCE_REQUEUE_UNSENT_JOBS)}
    assert not _quiet_housekeeping(record("celery.app.trace", logging.INFO, "succeeded", data=sweep))
    assert not _quiet_housekeeping(record("celery.beat", logging.INFO, "Scheduler: Sending due task %s (%s)",
                                          ("x", str(TaskName.WEBHOOKS_ENQUEUE_UNPROCESSED))))
    assert _quiet_housekeeping(record("celery.app.trace", logging.ERROR, "raised", data=sweep)), "failures pass"
    assert _quiet_housekeeping(record("celery.app.trace", logging.INFO, "succeeded",
                                      data={"name": str(TaskName.GENERATION_RUN)}))
