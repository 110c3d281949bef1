"""Models: the plug-in interface and plug-ins, training, evaluation and model packages."""
