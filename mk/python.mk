# python binding: targets test-python (run by make test) and anything else it needs.
.PHONY: test-python
test-python:
	@echo 'test-python: not built yet'
