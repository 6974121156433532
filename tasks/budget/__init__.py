"""The model half's budget: measure this machine's rates, size synthesize and train to fit
``budget.minutes``, and compare the plan with what the stages did."""
