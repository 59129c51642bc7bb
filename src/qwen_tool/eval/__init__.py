"""Evaluation: metrics as pure functions, BFCL data and AST checker, generation backends, runners and the report."""
