"""One module per job, named like its config (configs/<name>.py -> ddjax/jobs/<name>.py), each with
`check_config(config, workdir)` and `run(config, workdir)`; main.py dispatches on config.job. Jobs
import the libraries of ddjax/; nothing outside this package imports a job."""
