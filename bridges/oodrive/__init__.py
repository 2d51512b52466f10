"""The Oodrive bridge (documents): see bridge.py and contract.yaml."""
