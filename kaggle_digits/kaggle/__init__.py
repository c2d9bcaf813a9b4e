"""Everything that talks to Kaggle: the API client wrapper (api, the only module that imports `kaggle`),
and the kernel bundle with its push, status and output (kernel). The script that runs inside a kernel is
kaggle_digits/cli/kernel_runner.py."""
