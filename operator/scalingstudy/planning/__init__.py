"""Planning a study: its trials and their names (`plan`), which of them the design
allows now (`design`: the grid, `adaptive`, `isoflop`) within the budget of `cost`,
which to start (`scheduling`), and what a dry run says (`dry_run`). Pure: no I/O."""
