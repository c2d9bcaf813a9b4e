"""Everything that talks to Kaggle: the API client wrapper (api, the only module that imports `kaggle`),
the kernel bundle and its commands (kernel), and the script that runs inside a kernel (runner)."""
