def register(api):
    @api.on_step
    def step(job, state):
        raise ZeroDivisionError("step hook failed on purpose")

    @api.on_plan
    def plan(job, plan):
        plan.prompts = ["half-applied"]  # wrong length: the change must not be applied
        raise KeyError("plan hook failed on purpose")
