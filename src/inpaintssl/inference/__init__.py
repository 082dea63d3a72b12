"""Using a trained model: load it, predict label maps on new scans, export it to other runtimes."""
