/// Tether's version: the one place it is written. `tether --version` prints it; `make deb`
/// names the package after it.
public enum TetherVersion {
    public static let number = "0.9.0"
}
