"""Dataset card templates (`string.Template` Markdown) that `llava_mixes.publish.card` renders into README.md."""
