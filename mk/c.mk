# c binding: targets test-c (run by make test) and anything else it needs.
.PHONY: test-c
test-c:
	@echo 'test-c: not built yet'
