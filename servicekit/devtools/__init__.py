"""Tools around the services, never imported by them: start a service process, make its
credentials, make and drop its databases. Tests, the benchmark, the fault harness and
`make run` share these."""
