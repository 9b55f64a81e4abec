/// Placeholder until image decoding lands (issue 5).
public enum I2QImageModule {}
