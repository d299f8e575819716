"""The owner of job states, job kinds and the hand-over between the web side and the worker.

- `states`: the `JobStatus` and `WebhookStatus` enums and the named sets of states.
- `kinds`: task names, their queues, and what task runs each kind of job.
- `submission`: recording a job of each kind (idempotency keys, plan quota).
- `lifecycle`: claim, lease, progress, finish, retry, cancel, reap, operator retry and replay.
- `outbox`: handing committed rows to the broker, and the sweep for rows it never got.
- `recovery`: noticing that the broker's Redis lost its data, and putting everything waiting back.
- `announce`: the job events published for live watchers once each change has committed.
"""
