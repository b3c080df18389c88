"""Scale-out: one front (UI, REST API, MCP, extensions) dispatching jobs to Ray Serve replicas.

Nothing here is imported unless a --ray-* flag is given; `options` and `messages` import no Ray,
so the default in-process app never needs Ray installed. Rooms:

- options.py   the --ray-* flags checked and turned into a plan (pure)
- messages.py  what travels between front and replica (plain picklable dataclasses)
- progress.py  the two ends of a job's progress: replica side (emits, polls control) and front mirror
- control.py   the small actor that carries interrupt/skip from the front to a running replica
- replica.py   the Serve deployment: its own model manager + generation core, never writes outputs/
- executor.py  RayExecutor: the JobQueue's executor on the front (dispatch, retries, saving)
"""
