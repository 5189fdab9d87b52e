"""The training methods, one file each behind ``grappa.train.method.Method``;
``grappa.train.registry`` names them."""
