"""The repository's scripts; script.harness is the test bed shared by tests, benchmarks and script/develop."""
