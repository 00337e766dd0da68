// Loaded by vitest before every test file: the same polyfill the CLI loads first.
import '../node/polyfill.js'
