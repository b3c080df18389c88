"""Scale-out: one front (UI, REST API, MCP, extensions) dispatching jobs to Ray Serve replicas.

Nothing here is imported unless a --ray-* flag is given (webui.context imports only `options`,
which imports no Ray), so the default in-process app never needs Ray installed. Rooms:

- options.py    the --ray-* flags checked and turned into a plan (pure)
- front.py      wiring called from webui.context: the front's CPU policy, the scaled JobQueue
- executor.py   RayExecutor, the JobQueue's executor: checkpoint binding, dispatch, retries, waiting notes
- gate.py       at most N jobs in flight, let through in arrival order
- messages.py   what travels between front and replica (plain picklable dataclasses)
- progress.py   the two ends of a job's progress: replica side (emits, polls control) and front mirror
- control.py    the small actor that carries interrupt/skip from the front to a running replica
- replica.py    a replica: its own model manager + generation core (webui.context.build_core), no saving
- serve_app.py  the Serve deployment (model multiplexing) and the builder a KubeRay RayService imports
- saving.py     the front saves replica results (the one writer of outputs/)
"""
