"""Reading the IDaaS API into state: polls, counting rules, the state file, target names."""
