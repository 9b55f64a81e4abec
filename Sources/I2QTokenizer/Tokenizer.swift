/// Placeholder until the tokenizer lands (issue 4).
public enum I2QTokenizerModule {}
