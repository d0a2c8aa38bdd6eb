"""The chain shell: web3 client, contract artifacts, deployment, snapshot, transmitter, block watcher, devchain."""
