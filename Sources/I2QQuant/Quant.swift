/// Placeholder until the 4-bit codecs land (issue 6).
public enum I2QQuantModule {}
