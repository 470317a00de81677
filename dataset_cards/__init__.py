"""Dataset card templates (`string.Template` Markdown) that `llava_mixes.card` renders into a Hub repo's README."""
