# node binding: targets test-node (run by make test) and anything else it needs.
.PHONY: test-node
test-node:
	@echo 'test-node: not built yet'
