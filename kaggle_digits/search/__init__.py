"""Model selection: stratified cross-validation (cv), Optuna tuning (tune), storages and artifact stores
(storage), worker processes (workers) and the trial folders every finished trial leaves (runs)."""
